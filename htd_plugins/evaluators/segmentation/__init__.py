"""DeepLabv3+ training and scoring used by the ``deeplabv3plus`` evaluator, and its report section."""
