"""The FastAPI + SSE read layer over the result topics. Not built yet (see the live-API issue)."""
