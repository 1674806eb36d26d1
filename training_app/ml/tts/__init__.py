"""Speech synthesis (text to speech): text front end, the acoustic model, alignment, vocoder, training."""
