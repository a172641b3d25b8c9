"""PBX configuration: render a site's Asterisk config and the includable Linkage dialplan."""
