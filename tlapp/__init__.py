"""tlapp: transfer learning on images, from a folder of labelled pictures to a trained model.

The pieces, one idea each: `data` (folders, zips, CSVs into a split dataset), `models` (timm
backbones, weights), `freeze` (freeze depth), `engine` (the training Job), `metrics`, `runs` (the
run folder), `ui` (the Gradio page) and `cli` (the same from a terminal).
"""

__version__ = "0.1.0"
