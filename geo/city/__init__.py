"""The city: routing, boundary files and layers, the catalogue, geocoding."""
