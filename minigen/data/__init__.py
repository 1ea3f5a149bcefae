"""Datasets the course trains and samples on: 2D toys with exact denoisers, procedural images and scenes."""
