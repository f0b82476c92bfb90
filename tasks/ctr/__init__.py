"""The ctr task: click-through-rate prediction (FM, DeepFM, DCN, AutoInt, AFN, DCNv2)."""
