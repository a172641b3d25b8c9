"""The browser console (zh-CN) for agents and supervisors: static files served by the controller at /console."""
