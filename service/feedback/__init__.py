"""The feedback loop: what the service showed and what got clicked (records.py), written off the hot path
(recorder.py, sinks.py), read back in pages (reader.py), turned into training data (export.py) and into an
offline evaluation of a candidate bundle (evaluate.py). Torch-free, like the rest of service/."""
