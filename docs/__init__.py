"""Documentation tools: the generated parts of docs/*.md (``python -m docs.lab_guide``)."""
