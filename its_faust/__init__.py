"""ITS Faust: real-time traffic-camera analytics on Faust streams over Kafka."""
