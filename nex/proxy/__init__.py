"""The forward proxy: admission, blacklist, forwarding, origin connections and tunnels."""
