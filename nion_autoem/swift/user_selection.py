"""The user's selection in Swift's data panel stays where the user put it while results arrive.

Swift's data panel lists items newest first and keeps its selection by
position.  When an item's data change (a map updated by a running
experiment, the session's dose map), the item moves to the top of the list
and the selection keeps its position: it now points at another item.  The
user's item is no longer selected, and the Inspector rebuilds itself for the
other one (250-450 ms of a frozen window in the real GUI, per update).

:func:`keeping_the_selection` wraps a change to the document made on the UI
thread and selects the user's items again if the change moved the selection.
Swift fires its focus events for the detour and the return within the same
refresh, so the Inspector, which updates once per refresh, does not rebuild.
A selection in a display panel (the usual case after a click on an image) is
not the data panel's and is left alone.
"""

from __future__ import annotations

import contextlib
import typing

if typing.TYPE_CHECKING:
    from nion.swift import DocumentController


@contextlib.contextmanager
def keeping_the_selection(document_controller: DocumentController.DocumentController) -> typing.Iterator[None]:
    """Run a change to the document on the UI thread, then put the data panel's selection back if the change moved it."""
    if document_controller.selected_display_panel is not None:
        yield
        return
    before = list(document_controller.selected_display_items)
    try:
        yield
    finally:
        if document_controller.selected_display_panel is None and list(document_controller.selected_display_items) != before:
            present = document_controller.document_model.display_items
            document_controller.select_display_items_in_data_panel([item for item in before if item in present])
