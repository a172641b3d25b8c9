// The console's event stream. EventSource cannot send an Authorization header, so the stream is read with
// fetch() and parsed here (the text/event-stream format: `event:`, `data:`, `id:`, comment lines, a blank
// line ending each message). It reconnects after a pause when the connection drops.

export function sseParser(onMessage, onComment = () => {}) {
  let buffer = "";
  let event = "";
  let data = [];
  let id = "";
  const line = (text) => {
    if (text === "") {
      if (data.length) onMessage({ type: event || "message", data: data.join("\n"), id });
      event = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) {
      onComment(text.slice(1).trim());
      return;
    }
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  };
  return (chunk) => {
    buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(buffer);
      // a lone "\r" at the end may be the first half of "\r\n": wait for the next chunk
      if (!match || (match[0] === "\r" && match.index === buffer.length - 1)) return;
      line(buffer.slice(0, match.index));
      buffer = buffer.slice(match.index + match[0].length);
    }
  };
}

// handlers: message({type, data, id}), state("open" | "retrying" | "refused"), comment(text)
export function openStream(path, token, handlers) {
  const controller = new AbortController();
  let attempt = 0;
  const run = async () => {
    while (!controller.signal.aborted) {
      try {
        const response = await fetch(path, {
          headers: { Authorization: `Bearer ${token}`, Accept: "text/event-stream" },
          cache: "no-store", credentials: "omit", signal: controller.signal,
        });
        if (response.status === 401 || response.status === 403) {
          handlers.state("refused", response.status);
          return;
        }
        if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
        const feed = sseParser(handlers.message, (text) => {
          if (text === "connected") {
            attempt = 0;
            handlers.state("open");
          }
          if (handlers.comment) handlers.comment(text);
        });
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          feed(value);
        }
      } catch (error) {
        if (controller.signal.aborted) return;
      }
      handlers.state("retrying");
      attempt += 1;
      // a back-off before reconnecting, so a controller that is restarting is not hammered
      await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 500 * attempt)));
    }
  };
  run();
  return () => controller.abort();
}
