"""Report understanding and evaluation: sentence splitting, a CheXpert-style labeler, anatomy (CXAS names),
key phrases, NLG / clinical-efficacy metrics and the evaluation CLI.

Torch-free on purpose: `db/` imports the key-phrase extractor. Anything that needs torch (generation in
`evaluate_cli`, the optional RadGraph backend) is imported lazily inside the function that uses it.
"""
