"""Map pages: the data each page shows, heat grids and the Folium builders."""
