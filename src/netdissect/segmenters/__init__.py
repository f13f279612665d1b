"""Concepts labelled by a segmentation model (``model``) and GAN Dissection (``generator``)."""
