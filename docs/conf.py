# Configuration file for the Sphinx documentation builder.
# https://www.sphinx-doc.org/en/master/usage/configuration.html

import datetime
import os
import sys

# Document the package of this checkout
sys.path.insert(0, os.path.abspath(".."))

with open(os.path.join(os.path.dirname(__file__), "..", "sb3_softq", "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

# -- Project information -----------------------------------------------------

project = "sb3_softq"
author = "sb3_softq contributors"
copyright = f"2025-{datetime.date.today().year}, {author}"

# The short X.Y version
version = "v" + __version__
# The full version, including alpha/beta/rc tags
release = __version__

# -- General configuration ---------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    # MathJax shipped with the documentation (copied to _static/mathjax): the pages render maths offline
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
master_doc = "index"
language = "en"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "examples", "README.md"]
pygments_style = "sphinx"

# MyST: $...$ / $$...$$ maths and amsmath environments; anchors for ## and ### headings
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

# autodoc: keep the source order, show type hints in the signature
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "class"

# -- Options for HTML output -------------------------------------------------

html_theme = "sphinx_rtd_theme"
html_title = f"sb3_softq {release}"
html_static_path = []
htmlhelp_basename = "sb3_softqdoc"
