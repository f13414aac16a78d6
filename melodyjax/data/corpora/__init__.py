"""The built-in corpora: folk collections that music21 ships as ABC text.

`builtin` names them and finds their files, `convert` writes one MIDI file
per tune into the cache, `music21_abc` converts one tune, `abc_text` splits
a tunebook, and each corpus's own module holds what is particular to it
(`esac`, `oneills`).
"""
