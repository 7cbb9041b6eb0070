"""The API process: the result topics read into rings and read models, REST and SSE routes, the live view and the dashboard."""
