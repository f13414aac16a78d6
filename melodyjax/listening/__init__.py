"""What a person hears and sees: MIDI and WAV files, plots, the page."""
