"""Training data: records written by `vasa prepare` (records), preparation of talking videos (prepare)
and training windows (windows). The generator's relative motion space lives beside the face latents
(`vasa.latents.LatentSpace`, the mesh latent's `vasa.face.mesh.space`); representation re-exports it."""
