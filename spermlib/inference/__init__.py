"""The inference core (every model forward outside training), prediction and explanation."""
