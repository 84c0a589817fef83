"""The REST API: native endpoints and the TraderMade-compatible surface under /api/v1/."""
