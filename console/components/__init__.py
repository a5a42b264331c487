"""Small Reflex components, one file per panel."""
