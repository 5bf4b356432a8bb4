"""Swift glue: data items, panels, the console entry point and the headless usim session.

Nothing here computes anything an experiment decides on; it moves products
into the document (on the UI thread) and hardware calls off it.
"""
