"""`make demo`: the end-to-end demo lands with the demo issue."""

print("demo not ready yet")
