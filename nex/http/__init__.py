"""HTTP messages without sockets: grammar, heads, framing, bodies, dates, conditions, ranges,
forms."""
