"""The Chroma-backed gallery: image and caption collections, indexing, caption import."""
