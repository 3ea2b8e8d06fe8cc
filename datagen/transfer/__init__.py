"""Transfer of interventions onto natural images (X_itr): batched Gatys style transfer with VGG-19."""
