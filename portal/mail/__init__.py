"""Message composition (text + HTML) and the transports that carry messages out."""
