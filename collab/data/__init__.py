"""The procedural face world and the official on-disk training layout."""
from collab.data.captions import caption_attributes, make_caption
from collab.data.faceworld import FaceAttributes, FaceSample, render, render_face, sample_attributes

__all__ = ["FaceAttributes", "FaceSample", "render", "render_face", "sample_attributes", "make_caption",
           "caption_attributes"]
