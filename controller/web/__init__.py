"""The web dashboard and the HTTP control API of a running batch, and the pages of finished
batches. Reads published state and posts commands; never drives a device."""
