"""runq ui: the web pages and JSON API over the Broker."""
