"""Model clients behind protocols: chat/vision models, image-text embedders, caption text embedders."""
