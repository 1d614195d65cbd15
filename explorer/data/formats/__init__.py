"""Readers and writers for the standard dataset layouts (ImageFolder, Pascal VOC, COCO)."""
