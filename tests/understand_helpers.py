"""Shared test data for the request-understanding tests: three short documents of one article (the harbour at
Kestrel Bay), a question they answer, and the roles a text is read in (whether it is the turn being answered)."""

from __future__ import annotations

DOCS = [
    "The harbour at Kestrel Bay was first dredged in 1871, when the herring fleet outgrew the tidal creek that had "
    "served the village since medieval times. The work took four summers and used almost all of the council's money.",
    "A granite breakwater followed in 1884, quarried on the north headland and hauled down on a narrow-gauge tramway. "
    "It was lengthened by sixty metres in 1911 after a winter gale broke over the old head.",
    "Two ships were lost off Kestrel Bay in the gale of February 1911. The collier Marguerite dragged her anchors and "
    "struck the breakwater head; all nine of her crew were taken off by the lifeboat.",
]
Q = "When was the breakwater lengthened?"
ROLES = [("system", False), ("user", True)]
