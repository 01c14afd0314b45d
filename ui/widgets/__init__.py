"""Small widgets and modals shared by the console's screens (one per module)."""
