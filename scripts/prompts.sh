#!/usr/bin/env bash
# The Mandarin voice prompts Linkage plays (follow-up calls), made offline with espeak-ng's Mandarin voice and
# sox at 8 kHz mono (Asterisk plays them as sounds/linkage/<name>.wav). Idempotent: a prompt is remade only when
# its text changed. Usage: scripts/prompts.sh SOUNDS_DIR   (e.g. /usr/share/asterisk/sounds on a deployment)
set -euo pipefail

out="${1:?usage: prompts.sh SOUNDS_DIR}/linkage"
mkdir -p "$out"
declare -A PROMPTS=(
  [followup-ask]="您好，这里是政务服务热线回访。您反映的问题已经办结，请对办理结果进行评价：非常满意请按5，满意请按4，基本满意请按3，不满意请按2，非常不满意请按1。"
  [followup-invalid]="输入有误，请按一到五之间的数字键。"
  [followup-thanks]="感谢您的评价，再见。"
)
for name in "${!PROMPTS[@]}"; do
  text=${PROMPTS[$name]}
  stamp=$(printf '%s' "$text" | sha256sum | cut -c1-16)
  if [ -f "$out/$name.wav" ] && [ "$(cat "$out/.$name.sha" 2>/dev/null)" = "$stamp" ]; then
    continue
  fi
  tmp=$(mktemp --suffix=.wav)
  espeak-ng -v cmn -w "$tmp" "$text"
  sox "$tmp" -r 8000 -c 1 -b 16 "$out/$name.wav" vol 0.8
  rm -f "$tmp"
  printf '%s' "$stamp" > "$out/.$name.sha"
done
