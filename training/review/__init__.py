"""The learning loop's human side: low-confidence receipts from `receipts.review` are collected as dataset
records in the object store (`collect`), reviewed — in Label Studio (`labelstudio`) or with a small JSON
file of corrected field values (`corrections`) — and stored back as labelled pages that
`python -m training.train --reviewed s3` trains on (`records` defines both record formats)."""
