# The corpus under files/ is data (its tests import modules that do not exist here).
collect_ignore = ["files"]
