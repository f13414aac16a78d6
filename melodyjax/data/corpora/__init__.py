"""The built-in corpora and a user's ABC: folk collections as ABC text.

`builtin` names the built-in ones (esac, oneills, ryans, airds, misc and
the combined folk) and finds their files, `convert` writes one MIDI file
per tune into the cache, `abc_source` does the same for a user's tunebook,
folder or Session CSV/JSON, `summary` totals a conversion, `abc_midi` and
`music21_abc` convert one tune, `abc_text` splits a tunebook, and each
corpus's own module holds what is particular to it (`esac`, `oneills`).
"""
