"""The resource library (云录播资源库): catalogue, search, reviews and its REST routes."""
