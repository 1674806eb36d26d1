"""Audio handling shared by the apps, free of Django: decoding any file (decoding), the canonical 16-bit form
clips are stored in (canonical) and resampling, the one part that loads torch (resample)."""
