"""Follow-up calls (智能回访): the site calls the citizen back once a ticket it sent is resolved."""
