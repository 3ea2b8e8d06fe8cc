"""Transfer of interventions onto natural images (X_itr): batched Gatys style transfer with VGG-19.

Import the modules themselves: the package imports nothing, so reading its config
(``datagen.transfer.config``) never loads torch or torchvision.
"""
