"""The interactive explorer (ipywidgets + plotly): ``ExplorerApp()`` in a notebook or Voila."""

from explorer.app.dashboard import ExplorerApp

__all__ = ["ExplorerApp"]
