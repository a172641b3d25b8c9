"""The site's ACD queue (app_queue): its members' log-ins and pauses, who waits, and surge support."""
