"""Sub-commands of the ``breastfusion`` CLI (see ``BreastFusionLib.cli``)."""
