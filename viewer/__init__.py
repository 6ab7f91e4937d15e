"""Pure rendering for the review app: plain typed objects (model/types.py) in, RGB arrays / HTML / table rows out.

No model work and no database here (tests/test_layout.py enforces it): app.py does the heavy work and hands the
results to these functions.
"""
