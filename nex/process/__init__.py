"""Running Nex: command line, settings, assembly, listener, connections, workers, TLS, log."""
