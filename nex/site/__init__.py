"""The site's rules in front of the handlers: routing, Host, CORS, login, clients behind proxies."""
