"""Tests of image generation."""
