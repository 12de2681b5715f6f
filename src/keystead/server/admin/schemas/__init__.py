"""Request and response models of the admin API, one module per area; `fields` holds the value
types (ranges, lengths, character sets) every model uses."""
