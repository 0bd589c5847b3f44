"""Tables, markdown, claims, reproduction, figures and provenance."""
