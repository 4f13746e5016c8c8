"""Dataset and catalogue preparation on finished outputs: marketplace presets (``presets``), the
client-side square white canvas (``canvas``), compliance checks (``compliance``) and ML exports
(``exports``: masks, COCO, manifest). Works on files, so it is the same for every backend."""
