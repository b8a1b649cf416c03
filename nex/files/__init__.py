"""The file server's handlers: paths, static files, listings, archives, uploads, templates."""
